from birdgrab.cli import main

main()
